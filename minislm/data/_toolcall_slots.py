"""Slot values and phrasings of the tool-call generator in :mod:`minislm.data.tasks`.

Plain tables, kept apart so the generator logic reads in one screen. Facts
(capitals, authors, songs, science) are true; numbers in answers are computed.
Imperative phrases start lower-case and are wrapped by ``COMMAND_FORMS``;
phrases marked with a leading ``!`` are complete sentences or questions and are
used as they are.
"""

COMMAND_FORMS = (
    "{}", "{}", "{}", "please {}", "{}, please", "can you {}?", "could you {}, please?", "hey, {}",
    "I'd like you to {}", "would you {}?", "{} now", "okay car, {}",
)
QUESTION_WORDS = frozenset({"what", "what's", "how", "how's", "is", "will", "did", "does", "do", "has", "are",
                            "when", "who", "which", "any", "can", "could", "should"})

# -- make_call ---------------------------------------------------------------
FIRST_NAMES = (
    "John", "Maria", "Lukas", "Sophie", "Ahmed", "Emma", "Paolo", "Chloé", "Jan", "Olivia", "Mateo", "Hannah",
    "Noah", "Lena", "Pierre", "Aisha", "Ben", "Clara", "David", "Elena", "Felix", "Grace", "Ivan", "Julia",
    "Kenji", "Laura", "Marco", "Nina", "Oscar", "Priya", "Rafael", "Sara", "Tom", "Uma", "Victor", "Zoe",
)
LAST_NAMES = (
    "Doe", "Müller", "Schmidt", "Rossi", "Martin", "Smith", "Johnson", "García", "Novak", "Kowalski", "Dubois",
    "Jansen", "Andersson", "Brown", "Fischer", "Weber", "Lopez", "Nguyen", "Khan", "Becker", "Silva", "Taylor",
    "Wagner", "Moreau", "Costa", "Keller", "Meyer", "Hoffmann", "Lindqvist", "O'Brien",
)
RELATIONS = ("Mom", "Dad", "Grandma", "Grandpa", "my wife", "my husband", "my sister", "my brother", "the office",
             "my boss", "the dentist", "the babysitter", "Aunt Linda", "Uncle Bob")
CALL_PHRASES = (
    "call {contact}", "phone {contact}", "ring {contact}", "dial {contact}", "give {contact} a call",
    "start a call with {contact}", "get {contact} on the phone", "place a call to {contact}",
    "make a call to {contact}", "connect me with {contact}",
    "!I need to talk to {contact}", "!I want to call {contact}", "!let me speak to {contact}",
    "!can you call {contact}", "!I have to phone {contact} right away",
)
PHONE_NUMBERS = (
    "+49 171 2345678", "+1 415 555 0132", "0176 98765432", "+44 20 7946 0958", "+33 6 12 34 56 78",
    "555 0199", "+39 333 123 4567", "089 1234567", "+1 212 555 0147", "0151 11223344", "+34 612 345 678",
    "+31 6 98765432",
)
DIAL_PHRASES = ("dial {number}", "call {number}", "call the number {number}", "ring {number}", "phone {number}")

# -- music_control ------------------------------------------------------------
SONGS = (
    ("Bohemian Rhapsody", "Queen"), ("Hey Jude", "The Beatles"), ("Imagine", "John Lennon"),
    ("Billie Jean", "Michael Jackson"), ("Hotel California", "Eagles"), ("Smells Like Teen Spirit", "Nirvana"),
    ("Wonderwall", "Oasis"), ("Shape of You", "Ed Sheeran"), ("Rolling in the Deep", "Adele"),
    ("Take On Me", "a-ha"), ("Dancing Queen", "ABBA"), ("Purple Rain", "Prince"),
    ("Sweet Child O' Mine", "Guns N' Roses"), ("Like a Rolling Stone", "Bob Dylan"), ("Respect", "Aretha Franklin"),
    ("Blinding Lights", "The Weeknd"), ("Bad Guy", "Billie Eilish"), ("Viva la Vida", "Coldplay"),
    ("Africa", "Toto"), ("Highway to Hell", "AC/DC"), ("Born to Run", "Bruce Springsteen"),
    ("Superstition", "Stevie Wonder"), ("Rocket Man", "Elton John"), ("Heroes", "David Bowie"),
    ("Zombie", "The Cranberries"), ("Creep", "Radiohead"), ("Yesterday", "The Beatles"), ("Thriller", "Michael Jackson"),
    ("Clocks", "Coldplay"), ("Uptown Funk", "Mark Ronson"), ("Hallelujah", "Leonard Cohen"), ("Jolene", "Dolly Parton"),
)
TRACK_PHRASES = {
    "next": ("play the next song", "skip this song", "skip this track", "play next song", "!next track",
             "go to the next song", "skip to the next one", "play the next track", "!next track please"),
    "previous": ("play the previous song", "go back to the previous track", "play the last track again",
                 "!previous song", "go back one song", "replay the previous track"),
}
SONG_PHRASES = ("play {song} by {artist}", "put on {song} by {artist}", "play the song {song} by {artist}",
                "!I want to hear {song} by {artist}", "queue up {song} by {artist}", "start {song} from {artist}")
ARTIST_PHRASES = ("play some {artist}", "put on {artist}", "play music by {artist}", "play songs by {artist}",
                  "!I want to listen to {artist}", "play a few songs by {artist}")
GENRES = ("jazz", "classical", "rock", "pop", "hip hop", "country", "blues", "electronic", "reggae", "metal", "soul",
          "latest hits")
GENRE_PHRASES = ("play some {genre}", "put on {genre} music", "play {genre}", "!I'm in the mood for {genre}",
                 "play the {genre} station", "find some {genre} for me")
PLAYLISTS = ("Road Trip", "Morning Commute", "Chill Vibes", "Workout", "Favorites", "Summer Hits", "Focus",
             "Party Mix", "Sunday Morning", "Driving Rock")
PLAYLIST_PHRASES = ("play my {playlist} playlist", "start the {playlist} playlist", "put on the playlist {playlist}",
                    "play the {playlist} list", "listen to my {playlist} playlist")
SIMPLE_MUSIC_PHRASES = {
    "Pause": ("pause the music", "pause", "pause this song", "hold the music", "pause playback"),
    "Resume": ("resume the music", "resume playback", "continue playing", "unpause the music", "keep playing"),
    "Stop": ("stop the music", "stop playback", "turn the music off", "stop playing", "kill the music"),
    "Shuffle": ("shuffle my music", "turn on shuffle", "shuffle the songs", "play my music on shuffle"),
}
VOLUME_PHRASES = ("set the volume to {level}", "set the volume to {level} percent", "change the volume to {level}",
                  "!volume {level}", "put the volume at {level} percent", "make the volume {level}")

# -- navigation ---------------------------------------------------------------
LANDMARKS = (
    "Times Square", "the Eiffel Tower", "Brandenburg Gate", "the Golden Gate Bridge", "the Colosseum",
    "Central Park", "Buckingham Palace", "the Louvre", "Marienplatz", "Sagrada Família", "the Space Needle",
    "Rijksmuseum", "Neuschwanstein Castle", "the Statue of Liberty", "Alexanderplatz", "Piazza San Marco",
    "the Hollywood Sign", "Tower Bridge", "Charles Bridge", "the Atomium",
)
POINTS_OF_INTEREST = (
    ("the nearest gas station", "nearest gas station"), ("a gas station", "nearest gas station"),
    ("the nearest charging station", "nearest charging station"), ("a charging station", "nearest charging station"),
    ("the closest parking garage", "nearest parking garage"), ("a parking spot", "nearest parking"),
    ("the nearest hospital", "nearest hospital"), ("the closest pharmacy", "nearest pharmacy"),
    ("a coffee shop nearby", "nearest coffee shop"), ("the nearest supermarket", "nearest supermarket"),
    ("the airport", "airport"), ("the main train station", "main train station"), ("home", "home"),
    ("work", "work"), ("the office", "work"), ("the nearest car wash", "nearest car wash"),
)
CITIES = ("Berlin", "Munich", "Hamburg", "Paris", "Lyon", "London", "Manchester", "Madrid", "Barcelona", "Rome",
          "Milan", "Vienna", "Zurich", "Amsterdam", "Brussels", "Prague", "Warsaw", "Stockholm", "Copenhagen",
          "Lisbon", "New York", "Boston", "Chicago", "San Francisco", "Los Angeles", "Seattle", "Denver", "Miami",
          "Austin", "Toronto")
STREETS = (  # (street, city, house number written first as in the US and UK)
    ("Hauptstraße", "Munich", False), ("Baker Street", "London", True), ("Rue de Rivoli", "Paris", True),
    ("Kurfürstendamm", "Berlin", False), ("Main Street", "Boston", True), ("Gran Vía", "Madrid", False),
    ("Via del Corso", "Rome", False), ("Market Street", "San Francisco", True), ("Damrak", "Amsterdam", False),
    ("Mariahilfer Straße", "Vienna", False), ("Fifth Avenue", "New York", True), ("Königsallee", "Düsseldorf", False),
)
NAVIGATION_PHRASES = (
    "navigate to {place}", "take me to {place}", "drive me to {place}", "get directions to {place}",
    "start navigation to {place}", "set the destination to {place}", "find a route to {place}",
    "show me the way to {place}", "guide me to {place}", "plan a route to {place}", "!route to {place}",
    "!how do I get to {place}", "!what's the fastest way to {place}", "!can you take me to {place}",
)

# -- vehicle_control ----------------------------------------------------------
_ON = ("turn on the {name}", "switch on the {name}", "activate the {name}", "turn the {name} on",
       "put the {name} on", "enable the {name}")
_OFF = ("turn off the {name}", "switch off the {name}", "deactivate the {name}", "turn the {name} off",
        "disable the {name}", "shut off the {name}")
SWITCHES = {  # setting -> (spoken names, phrases for target_state 1, phrases for target_state 0)
    "headlights": (("headlights", "headlamps", "lights"), _ON, _OFF),
    "fog_lights": (("fog lights", "fog lamps"), _ON, _OFF),
    "hazard_lights": (("hazard lights", "hazards", "warning lights"), _ON, _OFF),
    "interior_lights": (("interior lights", "cabin lights", "reading lights"), _ON, _OFF),
    "air_conditioning": (("air conditioning", "AC", "A/C", "air con"), _ON, _OFF),
    "seat_heating": (("seat heating", "seat heater", "heated seat"), _ON, _OFF),
    "steering_wheel_heating": (("steering wheel heating", "heated steering wheel"), _ON, _OFF),
    "rear_defrost": (("rear defrost", "rear window heater", "defroster"), _ON, _OFF),
    "cruise_control": (("cruise control",), _ON, _OFF),
    "windows": (("windows", "window"), ("open the {name}", "roll down the {name}", "lower the {name}"),
                ("close the {name}", "roll up the {name}", "shut the {name}")),
    "sunroof": (("sunroof", "roof"), ("open the {name}", "slide the {name} open"),
                ("close the {name}", "shut the {name}")),
    "door_locks": (("doors", "car"), ("lock the {name}", "lock up the {name}"), ("unlock the {name}",)),
    "wipers": (("wipers", "windshield wipers"), _ON, _OFF),
}
TEMPERATURE_PHRASES = ("set the temperature to {degrees} degrees", "make it {degrees} degrees in here",
                       "set the cabin to {degrees} degrees", "change the temperature to {degrees}",
                       "heat the car to {degrees} degrees", "cool the car down to {degrees} degrees",
                       "adjust the climate to {degrees} degrees Celsius")
FAN_PHRASES = ("set the fan to level {level}", "!fan speed {level}", "put the fan on {level}",
               "change the blower to level {level}", "set the fan speed to {level}")

# -- online -------------------------------------------------------------------
WEATHER_DATES = (("today", "today"), ("right now", "today"), ("tomorrow", "tomorrow"),
                 ("this weekend", "weekend"), ("tonight", "tonight"))
WEATHER_PHRASES = ("!what's the weather in {city} {when}", "!will it rain in {city} {when}",
                   "!how warm is it in {city} {when}", "!do I need an umbrella in {city} {when}",
                   "check the weather in {city} {when}", "!is it going to snow in {city} {when}",
                   "tell me the forecast for {city} {when}", "!how cold will it be in {city} {when}")
COMPANIES = ("Apple", "Tesla", "Siemens", "Volkswagen", "BMW", "Microsoft", "Amazon", "SAP", "Nvidia",
             "Mercedes-Benz", "Airbus", "Nestlé", "Toyota", "Alphabet")
STOCK_PHRASES = ("!what's the stock price of {company}", "!how is {company} stock doing today",
                 "check the share price of {company}", "!what is {company} trading at",
                 "tell me how {company} shares are doing", "!how much is one {company} share right now")
TEAMS = ("Bayern Munich", "Real Madrid", "FC Barcelona", "Manchester United", "Juventus", "Paris Saint-Germain",
         "Borussia Dortmund", "Ajax", "LA Lakers", "New York Yankees", "Boston Celtics", "Chicago Bulls",
         "Liverpool", "AC Milan")
SPORTS_PHRASES = ("!did {team} win last night", "!what was the score of the {team} game",
                  "!how did {team} play yesterday", "check the latest results for {team}",
                  "tell me the last result of {team}", "!who won the {team} match")
AIRLINE_CODES = ("LH", "BA", "AF", "UA", "DL", "KL", "IB", "AZ", "LX", "OS", "SK", "AA")
FLIGHT_PHRASES = ("!is flight {flight} on time", "!what's the status of flight {flight}", "!has {flight} landed yet",
                  "check flight {flight}", "!is {flight} delayed", "tell me when flight {flight} arrives")
NEWS_SUBJECTS = ("technology", "the economy", "politics", "electric cars", "the stock market", "science",
                 "sports", "the climate", "space travel", "local traffic")
NEWS_PHRASES = ("!what's the latest news about {subject}", "!any headlines about {subject} today",
                "read me the news on {subject}", "tell me what's new in {subject}",
                "give me the top stories about {subject}")
VENUES = ("the Louvre", "the British Museum", "the Deutsches Museum", "the Prado", "Costco", "IKEA",
          "the nearest pharmacy", "the Vatican Museums", "the city library", "the Apple Store")
OPENING_PHRASES = ("!is {place} open today", "!when does {place} close", "!what are the opening hours of {place}",
                   "check if {place} is open now", "!how late is {place} open tonight")

# -- general_knowledge ----------------------------------------------------------
CAPITALS = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
    ("Austria", "Vienna"), ("Switzerland", "Bern"), ("the Netherlands", "Amsterdam"), ("Belgium", "Brussels"),
    ("Poland", "Warsaw"), ("the Czech Republic", "Prague"), ("Hungary", "Budapest"), ("Greece", "Athens"),
    ("Sweden", "Stockholm"), ("Norway", "Oslo"), ("Denmark", "Copenhagen"), ("Finland", "Helsinki"),
    ("Ireland", "Dublin"), ("the United Kingdom", "London"), ("Canada", "Ottawa"), ("the United States", "Washington, D.C."),
    ("Mexico", "Mexico City"), ("Brazil", "Brasília"), ("Argentina", "Buenos Aires"), ("Japan", "Tokyo"),
    ("China", "Beijing"), ("India", "New Delhi"), ("Australia", "Canberra"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"),
    ("Turkey", "Ankara"), ("Russia", "Moscow"), ("South Korea", "Seoul"), ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Nigeria", "Abuja"), ("Morocco", "Rabat"),
    ("New Zealand", "Wellington"),
)
CAPITAL_QUESTIONS = ("what is the capital of {country}", "what's the capital city of {country}",
                     "which city is the capital of {country}", "tell me the capital of {country}",
                     "do you know the capital of {country}")
BOOKS = (
    ("1984", "George Orwell"), ("Animal Farm", "George Orwell"), ("Pride and Prejudice", "Jane Austen"),
    ("Hamlet", "William Shakespeare"), ("Don Quixote", "Miguel de Cervantes"), ("War and Peace", "Leo Tolstoy"),
    ("The Odyssey", "Homer"), ("Moby-Dick", "Herman Melville"), ("Faust", "Johann Wolfgang von Goethe"),
    ("The Great Gatsby", "F. Scott Fitzgerald"), ("Frankenstein", "Mary Shelley"),
    ("Crime and Punishment", "Fyodor Dostoevsky"), ("The Divine Comedy", "Dante Alighieri"),
    ("Les Misérables", "Victor Hugo"), ("Brave New World", "Aldous Huxley"), ("To Kill a Mockingbird", "Harper Lee"),
    ("The Hobbit", "J. R. R. Tolkien"), ("Dracula", "Bram Stoker"), ("The Trial", "Franz Kafka"),
    ("One Hundred Years of Solitude", "Gabriel García Márquez"), ("Jane Eyre", "Charlotte Brontë"),
    ("Wuthering Heights", "Emily Brontë"), ("Great Expectations", "Charles Dickens"),
    ("The Old Man and the Sea", "Ernest Hemingway"), ("Ulysses", "James Joyce"),
)
AUTHOR_QUESTIONS = ("who wrote {book}", "who is the author of {book}", "who was {book} written by",
                    "tell me who wrote {book}", "do you know who wrote {book}")
ARITHMETIC_QUESTIONS = ("what is {a} {op} {b}", "what's {a} {op} {b}", "how much is {a} {op} {b}",
                        "calculate {a} {op} {b}")
CONVERSIONS = (  # (from unit, to unit, factor, offset): value_to = amount * factor + offset
    ("miles", "kilometers", 1.609344, 0.0), ("kilometers", "miles", 0.621371, 0.0),
    ("degrees Celsius", "degrees Fahrenheit", 1.8, 32.0), ("pounds", "kilograms", 0.45359237, 0.0),
    ("kilograms", "pounds", 2.204623, 0.0), ("gallons", "liters", 3.785412, 0.0), ("liters", "gallons", 0.264172, 0.0),
    ("feet", "meters", 0.3048, 0.0), ("inches", "centimeters", 2.54, 0.0),
)
CONVERSION_QUESTIONS = ("how many {dst} is {amount} {src}", "convert {amount} {src} to {dst}",
                        "what is {amount} {src} in {dst}", "how much is {amount} {src} in {dst}")
FACTS = (
    (("at what temperature does water boil at sea level", "what is the boiling point of water"),
     "Water boils at 100 degrees Celsius at sea level."),
    (("how many planets are in the solar system", "how many planets orbit the sun"),
     "There are eight planets in the solar system."),
    (("what is the largest planet in the solar system", "which planet is the biggest"),
     "Jupiter is the largest planet in the solar system."),
    (("what is the chemical symbol for gold", "which element has the symbol Au"), "The chemical symbol for gold is Au."),
    (("how many days are in a leap year", "how long is a leap year"), "A leap year has 366 days."),
    (("how fast does light travel", "what is the speed of light"),
     "Light travels at about 299,792 kilometers per second in a vacuum."),
    (("who painted the Mona Lisa", "who is the painter of the Mona Lisa"), "Leonardo da Vinci painted the Mona Lisa."),
    (("what is the highest mountain in the world", "which mountain is the tallest on Earth"),
     "Mount Everest is the highest mountain on Earth, at about 8,849 meters."),
    (("how many continents are there", "how many continents does Earth have"), "There are seven continents."),
    (("what gas do plants absorb from the air", "which gas do plants take in for photosynthesis"),
     "Plants absorb carbon dioxide from the air."),
    (("who developed the theory of relativity", "who came up with relativity"),
     "Albert Einstein developed the theory of relativity."),
    (("what is the freezing point of water in Fahrenheit", "at how many degrees Fahrenheit does water freeze"),
     "Water freezes at 32 degrees Fahrenheit."),
    (("how many legs does a spider have", "how many legs do spiders have"), "A spider has eight legs."),
    (("what is the largest ocean on Earth", "which ocean is the biggest"), "The Pacific is the largest ocean on Earth."),
    (("which element has atomic number 1", "what is the lightest element"), "Hydrogen is the lightest element; its atomic number is 1."),
    (("how many hours are in a week", "how many hours does a week have"), "A week has 168 hours."),
    (("who was the first person to walk on the moon", "who first stepped on the moon"),
     "Neil Armstrong was the first person to walk on the moon, in 1969."),
    (("what does ABS stand for in a car", "what is ABS in a car"), "ABS stands for anti-lock braking system."),
    (("who invented the telephone", "who is credited with inventing the telephone"),
     "Alexander Graham Bell is credited with inventing the telephone."),
    (("how many sides does a hexagon have", "how many edges does a hexagon have"), "A hexagon has six sides."),
    (("what is the square root of 144", "what's the square root of 144"), "The square root of 144 is 12."),
    (("how many minutes are in a day", "how many minutes does a day have"), "A day has 1,440 minutes."),
    (("who composed the Four Seasons", "who wrote The Four Seasons concertos"),
     "Antonio Vivaldi composed The Four Seasons."),
    (("what planet is known as the Red Planet", "which planet is called the Red Planet"),
     "Mars is known as the Red Planet."),
)
